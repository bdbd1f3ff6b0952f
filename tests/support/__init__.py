"""Test support code (not tests): a throwaway PostgreSQL server for the test suite."""

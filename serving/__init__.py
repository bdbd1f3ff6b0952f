"""Server runtime both Keyhouse services run on: uvicorn with deadlines and connection caps, the
accept loop, and the command-line helpers the two console scripts share. Not protocol code: the
framework-free protocol core is ``shared``."""

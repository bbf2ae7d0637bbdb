"""`canaryflow demo`: the whole of canaryflow on one machine, with real parts and embedded defaults."""

"""`deepserve tune`: the fastest configuration of one model that keeps a latency budget, found
by measuring candidate configurations on a real server with the project's load generator.

May import: loadtests (the closed-loop load and the local server), training (INT8 variants),
server (settings only through the command line it starts).
"""

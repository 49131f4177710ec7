"""Load test of a running wsloop stack: ``python -m loadtest.bench`` (see loadtest/README.md).

Modules: ``bench`` (the coordinator and command line), ``worker`` (a client process holding up to
5,000 sockets), ``wsclient`` (a minimal asyncio websocket client), ``payload`` (the message
format), ``probes`` (/proc, health JSON, Redis CLIENT LIST) and ``stats`` (percentiles).
"""

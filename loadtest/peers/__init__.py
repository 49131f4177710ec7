"""Other servers measured with the same load generator (``loadtest.bench --peer``).

Each peer is the smallest faithful app of that server for the bench's shape (every socket of a
facility receives every message published to it) with a publish command that reads
``<facility>\\t<payload>`` lines on stdin (``--publish-command``).
"""

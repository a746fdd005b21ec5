"""The notifier service: alerts people on deal transitions, walk-away conditions and relay stalls.

It consumes the deal events from NATS JetStream and the relay's deals.relay.stalled/.resumed
from core NATS (consumer.py), and alerts by the rules file (rules.py).
"""

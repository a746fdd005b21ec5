"""The notifier service: alerts people on deal transitions and walk-away conditions.

Empty for now; it subscribes to the deal events on NATS JetStream once the relay exists.
"""

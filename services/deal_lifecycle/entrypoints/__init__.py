"""The doors in: HTTP, NATS request/reply and the command line, each parsing, calling the application and shaping the answer."""

"""The deal lifecycle service: a deal from prospect to signed contract or walk-away."""

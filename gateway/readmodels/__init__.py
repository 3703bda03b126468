"""The gateway's read models: each one a pure view (apply events, answer reads) fed from
the stream by a small follower with the same protocol (``base.ReadModel``)."""

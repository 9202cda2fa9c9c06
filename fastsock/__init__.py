"""FastSock: self-hosted team chat with voice and video calls."""

__version__ = "0.1.0"

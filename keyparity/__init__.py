"""keyparity: prove that keys moved between PKCS #11 clusters arrived intact and usable."""

__version__ = "0.1.0"

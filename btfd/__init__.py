"""btfd: one daemon per node that maps kernel BTF once, parses it lazily and shares it."""

__version__ = "0.1.0"

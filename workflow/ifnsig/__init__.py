"""ifnsig: type I interferon signature in blood RNA-seq, before and after JAK inhibition."""

__version__ = "0.1.0"

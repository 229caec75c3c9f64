"""Media plane: encoded-frame tap, publishers, forwarders and subscribers."""

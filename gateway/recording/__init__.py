"""Recording: publishers' encoded frames remuxed into crash-safe files, and their API."""

"""Transit: static GTFS, trip matching and arrival predictions for the PIS."""

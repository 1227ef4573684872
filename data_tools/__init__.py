"""Data tools: synthetic raindrops (`raindrops`, `synthesize`) and dataset checks (`prepare`)."""

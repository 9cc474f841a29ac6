"""What `main.py` runs: the config, the data, the objective, training, sampling, the figures and the scores."""

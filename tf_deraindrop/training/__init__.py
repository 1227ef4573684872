"""Training the Attentive GAN: configuration, strategy and precision, the GAN model, callbacks.

The command line is `python -m tf_deraindrop.train`.
"""

"""What both models share: tokenizers, the recurrent core, run directories, the training engine, text input."""

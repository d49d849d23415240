"""The encoder–decoder with attention: model, attention, parallel text, training task, decoding, BLEU."""

"""The engine: PCM to words, one module per stage (audio, features, model, ctc, beam, lm, endpoint, stream)."""

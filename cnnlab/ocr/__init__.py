"""Scene-text recognition parts: CTC loss and decoding (:mod:`.ctc`), edit distance and error rates (:mod:`.metrics`)."""

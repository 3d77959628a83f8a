"""Physics of tagged MRI: SPAMM tagging (Bloch), contrast change, tag fading."""

"""SFT stage: axolotl configs, the launcher and its helpers (see SFT/README.md)."""

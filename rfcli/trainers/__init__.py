"""One adapter per TRL trainer (SFT, DPO, GRPO) behind one small interface."""

"""Search that learns while the sweep runs: the space as a sampler sees it (space.py), the proposals
made from what the runs record at each rung (proposer.py). Pure: no torch, no I/O."""

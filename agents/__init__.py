"""RL agents for textgym environments: baselines, samplers and (later) PPO, RLOO and SB3 adapters."""

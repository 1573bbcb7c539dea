"""Public disclosure board (四议两公开: 决议公开 / 实施结果公开, closed demands) and the
monthly follow-up of resolutions (每月回访)."""

"""Mean-teacher training: objectives per method, EMA, schedules and the training loop."""

"""Running a policy online: PolicyRunner, the observation history, chunk timing and continuity (ROS-free, torch-free)."""

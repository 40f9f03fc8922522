"""Seeing what the policy is about to do: the predicted chunk as an end-effector path (ROS-free), and
a live view of a running graph in the browser (Rerun)."""

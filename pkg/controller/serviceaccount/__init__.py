"""The ServiceAccount and root CA publisher controllers."""

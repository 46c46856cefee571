"""SWE tasks: offline-built images, instances in SWE-bench's format, and grading."""

"""Instructor-only: the student release, the Gradescope bundle and its driver, the Classroom workflow, the classifiers.

Not part of the student release (manifest.INSTRUCTOR_ONLY holds the whole package)."""

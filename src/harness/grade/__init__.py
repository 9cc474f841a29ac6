"""Grading: the pytest plugin that scores, Classroom's verdicts, the Gradescope child's plugin, the basics'
short run."""

# nbgrader configuration of the HLGFA course; nbgrader reads it when run from this folder
# (`make release` / `make autograde` do that, via course/course.py).
#
# Layout (nbgrader's defaults, relative to this folder):
#   source/<assignment>/<notebook>.ipynb     instructor versions: solutions + hidden tests (in git)
#   release/<assignment>/                    student versions, generated (outside git)
#   submitted/<student>/<assignment>/        handed-in notebooks (outside git)
#   autograded/<student>/<assignment>/       graded copies with outputs (outside git)
#   gradebook.db                             nbgrader's database (outside git)
import os

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "hlgfa_lite"

# The stub students see in place of a solution: what the course notebooks always had.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError"}

# Notebook 04 trains a model in one cell: nbgrader's default of 30 s per cell is far too short.
c.Execute.timeout = 1800

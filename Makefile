# hlgfa_lite — every target installs what it needs into .venv/ first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0
# torch 2.14.1 and torchvision 0.29.1 are pinned (constraints.txt) so no other version is dragged in.
NEED_GB := 7
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: install demo unit test notebooks lab lint browser-deps clean release autograde app student html collect review formgrader grades feedback solutions timings timings-table

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  if [ "$$free" -lt $(NEED_GB) ]; then \
	    echo "WARNING: $$free GB free on $$(df -P . | awk 'NR==2 {print $$6}'); the install needs about $(NEED_GB) GB" \
	         "(torch's CUDA build is ~5.5 GB). If pip stops with 'No space left on device', free disk space" \
	         "(old clones, ~/.cache/pip) and run make again."; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)  ## the main job: demo data -> train -> evaluate -> figures in runs/demo
	$(VENV)/bin/hlgfa-lite demo --out runs/demo

# pytest workers: one per core, at most 4 (each holds torch and a backbone; every test uses one torch thread)
WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))

unit: $(STAMP)  ## fast unit suite (no notebooks, no browser)
	$(PY) -m pytest -q -n $(WORKERS) -m "not notebooks and not browser" tests

test: $(STAMP) browser-deps  ## everything CI runs: lint, unit, notebooks (papermill + nbval), browser
	$(VENV)/bin/ruff check hlgfa_lite tests benchmarks
	$(PY) -m pytest -q -n $(WORKERS) tests

notebooks: $(STAMP)  ## executed copies of the course notebooks in executed/ (outside git)
	$(PY) -m hlgfa_lite.course.notebook_runner --out executed

HTML_PROFILE ?= classroom
html: $(STAMP)  ## executed HTML copies of the notebooks to read before class -> executed/html/ (HTML_PROFILE=ci: minutes)
	$(PY) -m hlgfa_lite.course.notebook_runner --out executed --profile $(HTML_PROFILE)
	$(VENV)/bin/jupyter nbconvert --to html --output-dir executed/html executed/[0-9]*.ipynb

STUDENT_OUT ?= build/student
student: $(STAMP)  ## a student-only copy: released notebooks + package, no course/ -> $(STUDENT_OUT)/hlgfa_lite_course{,.zip}
	$(PY) course/course.py student --out $(STUDENT_OUT)

lab: $(STAMP)  ## JupyterLab on the notebooks, widgets working
	$(VENV)/bin/jupyter lab notebooks

release: $(STAMP)  ## nbgrader student versions of course/source/ -> course/release/ (outside git) and notebooks/
	$(PY) course/course.py release

SUBMISSIONS ?=
GRADES ?= course/grades.csv
autograde: $(STAMP)  ## grade hand-ins: make autograde SUBMISSIONS=DIR (DIR/<student>/<notebook>.ipynb) -> $(GRADES)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make autograde SUBMISSIONS=DIR  (DIR/<student>/<notebook>.ipynb)"; exit 2; }
	$(PY) course/course.py autograde "$(SUBMISSIONS)" --grades "$(GRADES)"

EXPORT ?=
HANDINS ?= course/collected
collect: $(STAMP)  ## hand-ins of an LMS export: make collect EXPORT=DIR_OR_ZIP -> $(HANDINS)/<student>/<notebook>.ipynb
	@test -n "$(EXPORT)" || { echo "usage: make collect EXPORT=DIR_OR_ZIP  (<student>_<notebook>.ipynb, <student>.zip, <student>/)"; exit 2; }
	$(PY) course/handins.py collect "$(EXPORT)" --out "$(HANDINS)"

review: $(STAMP)  ## after make autograde: written answers to grade, exercises at 0, notebooks missing -> course/review.md
	$(PY) course/handins.py review --submissions "$(HANDINS)"

formgrader: $(STAMP)  ## grade the written answers: JupyterLab in course/, menu Nbgrader -> Formgrader
	cd course && ../$(VENV)/bin/jupyter lab

grades: $(STAMP)  ## the grade table again, the hand-graded written answers included -> $(GRADES)
	$(PY) course/handins.py grades --out "$(GRADES)"

feedback: $(STAMP)  ## nbgrader's HTML feedback per student (hidden tests removed) -> build/feedback/<student>{/,.zip}
	$(PY) course/handins.py feedback --out build/feedback

DEADLINE ?=
solutions: $(STAMP)  ## after the deadline (DEADLINE=YYYY-MM-DD refuses before it): solved notebooks, no hidden tests -> build/solutions{/,.zip}
	$(PY) course/handins.py solutions --out build/solutions $(if $(DEADLINE),--after $(DEADLINE))

timings: $(STAMP)  ## on an idle machine with 5b's and 08's real data: minutes per notebook -> course/timings/ + docs/INSTRUCTORS.md
	$(PY) course/timings.py measure

timings-table: $(STAMP)  ## the minutes table of docs/INSTRUCTORS.md from course/timings/classroom.json
	$(PY) course/timings.py render

VOILA_ARGS ?=
app: $(STAMP)  ## the ablation panel as a standalone page (Voila) on the demo data: http://localhost:8866
	$(VENV)/bin/voila app/ablation_panel.ipynb $(VOILA_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check hlgfa_lite tests benchmarks

browser-deps:  ## Debian's Chromium for the real-browser test (no browser download)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "browser test needs Debian's chromium: sudo apt-get install chromium"; fi; }

clean:
	rm -rf runs executed .pytest_cache

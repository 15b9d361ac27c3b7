# The student versions (built by make_student_versions.py) stop at every unsolved exercise by design,
# so nbval must not run them; tests/test_student_versions.py checks them instead.
collect_ignore = ["student"]

"""Exercise 1 (node port): node-a's KUBE-NODEPORTS rule and KUBE-EXT chain for shop/web."""

from conftest import (closed_port_problem, every_caller_problem, every_pod_problem,
                      masquerade_problem, problem_check)

from lab_runner.grading.common_checks import nothing_else_changed_check

NODE_PORT = 30080

test_every_pod_reached = problem_check("every-pod-reached", every_pod_problem, NODE_PORT, ".")
test_outside_caller_masqueraded = problem_check(
    "outside-caller-masqueraded", masquerade_problem, NODE_PORT,
    "every caller from outside is marked for masquerading before it is sent on to a pod.")
# The ClusterIP's callers too: the Service chain is open to the submission.
test_every_caller = problem_check("every-caller", every_caller_problem, (NODE_PORT,),
                                  cluster_ips=True)
test_other_ports_closed = problem_check("other-ports-closed", closed_port_problem)
test_nothing_else_changed = nothing_else_changed_check()

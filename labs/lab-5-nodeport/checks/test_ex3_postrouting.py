"""Exercise 3 (postrouting): node-a's KUBE-POSTROUTING, where the mark bit 0x4000 is acted on."""

from conftest import every_caller_problem, every_pod_problem, masquerade_problem, problem_check

NODE_PORT = 30080

test_outside_caller_masqueraded = problem_check(
    "outside-caller-masqueraded", masquerade_problem, NODE_PORT,
    "marked connections are masqueraded as they leave node-a.")
test_every_pod_answers = problem_check(
    "every-pod-answers", every_pod_problem, NODE_PORT,
    ": web-b1's answers too must come back through node-a, whose conntrack undoes the DNAT.")
# The ClusterIP's callers include the client whose packets came with the mark 0x4001.
test_every_caller = problem_check("every-caller", every_caller_problem, (NODE_PORT,),
                                  cluster_ips=True)

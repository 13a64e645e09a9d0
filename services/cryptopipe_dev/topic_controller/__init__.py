"""A dev stand-in for Strimzi's topic operator: NOT Strimzi, and never shipped in the chart.

Strimzi cannot be obtained on the machines this project is developed on, yet the operator renders
its topics as Strimzi KafkaTopics and reads their status. This small controller, part of the dev
harness only, closes that gap for the dev cluster and the tests: it watches KafkaTopics
(``kafka.strimzi.io/v1``) and, through kafka-python's admin client, makes each one a real Kafka
topic (creates it, grows its partitions, alters its config, deletes it with the resource unless
``strimzi.io/managed: "false"``), reporting status the way Strimzi's unidirectional topic
operator does (a Ready condition with a CamelCase reason, observedGeneration, topicName, topicId;
Strimzi's ``strimzi.io/topic-operator`` finalizer). docs/cluster.md ("Kafka topics: a stand-in
for Strimzi") lists what it does and does not do compared with the real thing.

    python -m cryptopipe_dev.topic_controller --bootstrap 127.0.0.1:9092 --namespace demo

or in-process: ``TopicController(bootstrap, kubeconfig=path, namespaces=["demo"]).start()``, or as
a child process: ``cryptopipe_dev.stack.topic_controller.topic_controller_process(...)`` (the stack
starts it; the stand-in itself does not depend on the stack).
"""

from cryptopipe_dev.topic_controller.controller import FINALIZER, STAND_IN, TopicController, TopicError

__all__ = ["FINALIZER", "STAND_IN", "TopicController", "TopicError"]

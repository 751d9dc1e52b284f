#!/usr/bin/env python3
"""Calls every ManagerService read rpc over a channel that compresses every message with gzip,
as clients with compression on by default do. Prints one line per rpc; exits non-zero on the
first failure. Stubs generated from proto/cube.proto must be on PYTHONPATH.

    python3 gzip_reads.py --manager 127.0.0.1:5555
"""

import argparse
import sys

import grpc

import cube_pb2
import cube_pb2_grpc

DEADLINE = 30


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manager", required=True, help="manager host:port")
    args = parser.parse_args()

    with grpc.insecure_channel(args.manager, compression=grpc.Compression.Gzip) as channel:
        stub = cube_pb2_grpc.ManagerServiceStub(channel)
        # A task with output, on the cluster's Exec worker (no image).
        spec = cube_pb2.TaskSpec(name="gzip", command=["sh", "-c", "echo hello-gzip"])
        task = stub.SubmitTask(cube_pb2.SubmitTaskRequest(spec=spec), timeout=DEADLINE).task
        print("SubmitTask ok")

        watch = cube_pb2.WatchTasksRequest(task_ids=[task.id])
        for message in stub.WatchTasks(watch, timeout=DEADLINE):
            if message.HasField("task") and message.task.state == cube_pb2.TASK_STATE_COMPLETED:
                break
            if message.HasField("task") and message.task.state == cube_pb2.TASK_STATE_FAILED:
                sys.exit(f"the task failed: {message.task.message}")
        print("WatchTasks ok")

        got = stub.GetTask(cube_pb2.GetTaskRequest(task_id=task.id), timeout=DEADLINE)
        assert got.task.id == task.id and got.events, got
        print("GetTask ok")

        listed = stub.ListTasks(cube_pb2.ListTasksRequest(page_size=10), timeout=DEADLINE)
        assert [t.id for t in listed.tasks] == [task.id], listed
        print("ListTasks ok")

        nodes = stub.ListNodes(cube_pb2.ListNodesRequest(), timeout=DEADLINE)
        assert len(nodes.nodes) == 1, nodes
        print("ListNodes ok")

        events = stub.ListEvents(cube_pb2.ListEventsRequest(task_id=task.id), timeout=DEADLINE)
        assert events.events, events
        print("ListEvents ok")

        explained = stub.ExplainTask(cube_pb2.ExplainTaskRequest(task_id=task.id), timeout=DEADLINE)
        assert explained.strategy, explained
        print("ExplainTask ok")

        logs = b"".join(
            chunk.data
            for chunk in stub.StreamLogs(
                cube_pb2.StreamLogsRequest(task_id=task.id), timeout=DEADLINE
            )
        )
        assert b"hello-gzip" in logs, logs
        print("StreamLogs ok")


if __name__ == "__main__":
    main()

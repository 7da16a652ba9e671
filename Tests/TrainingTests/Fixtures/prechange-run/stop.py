import subprocess, os, time, signal, sys
p = subprocess.Popen(["/tmp/catlip-before", "train", "--config", "tiny.yaml"], stdout=open("run.log", "w"), stderr=subprocess.STDOUT)
while True:
    try:
        n = sum(1 for _ in open("run/metrics.jsonl"))
    except FileNotFoundError:
        n = 0
    if n >= int(sys.argv[1]) or p.poll() is not None:
        break
    time.sleep(0.001)
p.send_signal(signal.SIGTERM)
print("exit", p.wait())

"""Drives executioner's Judge0-compatible API with the official Judge0 Python SDK, unchanged.

Usage: client.py JUDGE0_URL AUTH_TOKEN CALLBACK_URL

Prints one JSON object: what the SDK read back for each case (tests/judge0.rs checks it).
"""

import json
import sys

import judge0
from judge0 import LanguageAlias, Status, Submission

URL, TOKEN, CALLBACK = sys.argv[1:4]

SUM_C = '#include <stdio.h>\nint main(void){long a,b;scanf("%ld %ld",&a,&b);printf("%ld\\n",a+b);return 0;}\n'
SUM_CPP = '#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n";}\n'
SUM_PY = "a, b = map(int, input().split())\nprint(a + b)\n"
RETRY = judge0.MaxWaitTime(120)


def shown(submission):
    """What a test checks of a finished submission, as the SDK holds it."""
    return {
        "token": str(submission.token),
        "status": int(submission.status) if submission.status is not None else None,
        "stdout": submission.stdout,
        "stderr": submission.stderr,
        "compile_output": submission.compile_output,
        "message": submission.message,
        "time": submission.time,
        "wall_time": submission.wall_time,
        "memory": submission.memory,
        "exit_code": submission.exit_code,
        "exit_signal": submission.exit_signal,
        "created_at": submission.created_at.isoformat() if submission.created_at else None,
        "finished_at": submission.finished_at.isoformat() if submission.finished_at else None,
    }


def create_and_wait(**fields):
    submission = Submission(**fields)
    client.create_submission(submission)
    return shown(judge0.wait(client=client, submissions=submission, retry_strategy=judge0.MaxWaitTime(120)))


client = judge0.Client(URL, headers={"X-Auth-Token": TOKEN})
results = {
    "about": client.get_about(),
    "version": client.version,
    "languages": {
        alias.name: client.get_language_id(alias)
        for alias in (LanguageAlias.C, LanguageAlias.CPP, LanguageAlias.PYTHON, LanguageAlias.JAVA)
    },
    "supported": {
        alias.name: client.is_language_supported(alias)
        for alias in (LanguageAlias.C, LanguageAlias.CPP, LanguageAlias.PYTHON, LanguageAlias.PYTHON2)
    },
    "config": client.config.model_dump(),
    "statuses": client.get_statuses(),
}

# a+b in C, C++ and Python through the SDK's language constants, with the expected output.
for name, alias, source in (
    ("c", LanguageAlias.C, SUM_C),
    ("cpp", LanguageAlias.CPP, SUM_CPP),
    ("python", LanguageAlias.PYTHON, SUM_PY),
):
    results["accepted_" + name] = create_and_wait(
        source_code=source, language=alias, stdin="2 40\n", expected_output="42\n"
    )

# judge0.run: create and wait in one call, no expected output.
ran = judge0.run(client=client, source_code="print('hi')\n", language=LanguageAlias.PYTHON)
results["run"] = shown(ran)

results["wrong"] = create_and_wait(
    source_code=SUM_PY, language=LanguageAlias.PYTHON, stdin="2 40\n", expected_output="43\n"
)
results["tle"] = create_and_wait(
    source_code="while True:\n    pass\n",
    language=LanguageAlias.PYTHON,
    cpu_time_limit=0.5,
    wall_time_limit=10,  # the CPU limit ends it first, even on a loaded machine
)
results["compile_error"] = create_and_wait(source_code="int main( {\n", language=LanguageAlias.C)
results["sigsegv"] = create_and_wait(
    source_code="int main(void){volatile int *p = 0; *p = 1; return 0;}\n", language=LanguageAlias.C
)
results["nzec"] = create_and_wait(
    source_code="import sys\nprint('bye', file=sys.stderr)\nsys.exit(3)\n", language=LanguageAlias.PYTHON
)

# Command-line arguments, as words (no shell).
results["args"] = create_and_wait(
    source_code="import sys\nprint(' / '.join(sys.argv[1:]))\n",
    language=LanguageAlias.PYTHON,
    command_line_arguments="x 'y z'",
)

# Compiler options.
results["options"] = create_and_wait(
    source_code='#include <stdio.h>\nint main(void){printf("%d\\n", ANSWER);return 0;}\n',
    language=LanguageAlias.C,
    compiler_options="-DANSWER=42 -O0",
)

# A batch: several test cases of one program are created at once and polled as a batch.
batch = judge0.run(
    client=client,
    source_code=SUM_PY,
    language=LanguageAlias.PYTHON,
    test_cases=[("1 2\n", "3\n"), ("5 5\n", "11\n"), ("20 22\n", "42\n")],
)
results["batch"] = [shown(s) for s in batch]

# Bytes that are not UTF-8: the SDK asks for base64 and decodes them itself.
results["binary"] = create_and_wait(
    source_code='#include <stdio.h>\nint main(void){putchar(0xff);putchar(0xfe);putchar(\'A\');return 0;}\n',
    language=LanguageAlias.C,
)

# A callback: the finished submission is PUT to the receiver.
results["callback"] = create_and_wait(
    source_code="print(6 * 7)\n", language=LanguageAlias.PYTHON, callback_url=CALLBACK
)

# Refused: what this service cannot honour exactly is a 422 the SDK raises.
try:
    client.create_submission(
        Submission(source_code=SUM_PY, language=LanguageAlias.PYTHON, enable_network=True)
    )
    results["network"] = "accepted"
except Exception as e:  # httpx.HTTPStatusError
    response = getattr(e, "response", None)
    results["network"] = {
        "status": getattr(response, "status_code", None),
        "body": response.json() if response is not None else str(e),
    }

json.dump(results, sys.stdout)

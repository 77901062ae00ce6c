# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Can the service user write a directory?  Asked as that user, not guessed.

Run as root, the question is answered by a forked child that takes the user's
uid, gid and groups and asks the kernel (``os.access``), so directory modes,
groups, ACLs and every parent directory on the way count as they will for the
service.  Nothing is created or written.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import stat

WRITABLE = 'writable'            # an existing directory the user can write
CREATABLE = 'creatable'          # missing; the user can create it (the filter does)
DENIED = 'denied'                # exists, or its parent does, but the user cannot write
NOT_A_DIRECTORY = 'not a directory'


@dataclasses.dataclass(frozen=True)
class Verdict:
    answer: str                  # one of the constants above
    where: str                   # the directory the answer is about (an ancestor if missing)


def lookup(name: str | None) -> pwd.struct_passwd:
    """The user called ``name`` (a name or a numeric uid), or the current user."""
    if name is None:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():
            return pwd.getpwuid(int(name))
        raise


def can_ask_as(user: pwd.struct_passwd) -> bool:
    """Root can ask as anyone; others only as themselves."""
    return os.geteuid() in (0, user.pw_uid)


def probe_as(user: pwd.struct_passwd, path: str) -> Verdict:
    """:func:`probe` run with the identity of ``user`` (see :func:`can_ask_as`)."""
    if os.geteuid() == user.pw_uid:
        return probe(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: never returns
        code = 1
        try:
            os.close(read_end)
            os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            verdict = probe(path)
            os.write(write_end, ('%s\0%s' % (verdict.answer, verdict.where)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, 'rb') as reader:
        data = reader.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or b'\0' not in data:
        raise OSError('could not take the identity of %s to check %s' % (user.pw_name, path))
    answer, where = data.decode().split('\0', 1)
    return Verdict(answer, where)


def probe(path: str) -> Verdict:
    """What the current process may do with the directory ``path``."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _creatable(path)
    except PermissionError:                          # a parent is not searchable
        return Verdict(DENIED, path)
    if not stat.S_ISDIR(st.st_mode):
        return Verdict(NOT_A_DIRECTORY, path)
    return Verdict(WRITABLE if os.access(path, os.W_OK | os.X_OK) else DENIED, path)


def _creatable(path: str) -> Verdict:
    """``os.makedirs`` would need the nearest existing ancestor to be writable."""
    ancestor = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            st = os.stat(ancestor)
        except (FileNotFoundError, NotADirectoryError):
            ancestor = os.path.dirname(ancestor)
            continue
        except PermissionError:
            return Verdict(DENIED, ancestor)
        if not stat.S_ISDIR(st.st_mode):
            return Verdict(NOT_A_DIRECTORY, ancestor)
        ok = os.access(ancestor, os.W_OK | os.X_OK)
        return Verdict(CREATABLE if ok else DENIED, ancestor)


def describe(path: str) -> str:
    """Owner, group and mode of ``path``, as ``ls -ld`` would tell them."""
    st = os.stat(path)
    return 'owner %s, group %s, mode %04o' % (_name(pwd.getpwuid, st.st_uid),
                                              _name(grp.getgrgid, st.st_gid),
                                              stat.S_IMODE(st.st_mode))


def group_name(user: pwd.struct_passwd) -> str:
    return _name(grp.getgrgid, user.pw_gid)


def _name(get, number: int) -> str:
    try:
        return get(number)[0]
    except KeyError:
        return str(number)

"""The inside view: what each namespace contains, as a process inside it sees it.

The kernel keeps a separate instance of a resource's bookkeeping per
namespace; these modules read that instance, on demand and read-only:

  view.py      inspect(targets) and compare(views): which reader, ended handling
  target.py    which namespace is meant, and a checked open handle on it
  spawn.py     the short-lived helper process, bounded and counted (server side)
  helper.py    the helper itself: joins namespaces (setns) and collects
  procread.py  bounded reads through directory fds
  netlink.py   rtnetlink links and addresses (for net)
  utsns.py netns.py pidns.py mntns.py ipcns.py userns.py cgroupns.py timens.py
               one module per namespace type: its parsers, its reader, its fields

Kept light: the helper process imports this package.
"""

# MicroPython-side stand-in for `socket` (run_renew.mjs): ssl.wrap_socket replays.
def getaddrinfo(host, port):
    return [(2, 1, 0, "", (host, port))]


class socket:
    def settimeout(self, t):
        pass

    def connect(self, addr):
        pass

    def close(self):
        pass

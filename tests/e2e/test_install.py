"""make install: the binary and its Lua modules under a prefix, working from there."""
import os
import subprocess

from harness import CICADA, CicadaTest, main


class Install(CicadaTest):
    def test_installed_binary_finds_its_modules(self):
        build = os.path.dirname(CICADA)
        prefix = self.path("prefix")
        subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True,
                       capture_output=True)
        binary = os.path.join(prefix, "bin", "cicada")
        self.assertTrue(os.access(binary, os.X_OK))
        self.assertTrue(os.path.exists(os.path.join(prefix, "share", "cicada", "lua", "cicada",
                                                    "runtime.lua")))
        script = self.write("s.lua", 'local cicada = require "cicada"\n'
                            'io.stderr:write("path: ", package.path, "\\n")\n'
                            'local U = cicada.User:extend("Installed", {})\n'
                            'U:task(function() end)\nreturn { U }\n')
        # moved away from where it was installed, it still finds the modules beside itself
        env = dict(os.environ)
        env.pop("CICADA_LUA_DIR", None)
        moved = self.path("elsewhere")
        os.rename(prefix, moved)
        p = subprocess.run([os.path.join(moved, "bin", "cicada"), "-f", script, "-l"],
                           capture_output=True, text=True, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Installed", p.stdout)
        self.assertIn(os.path.join(moved, "bin", "..", "share", "cicada", "lua"), p.stderr)
        v = subprocess.run([os.path.join(moved, "bin", "cicada"), "--version"],
                           capture_output=True, text=True)
        self.assertIn("LuaJIT", v.stdout)


if __name__ == "__main__":
    main()

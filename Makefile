# saelab: two commands set everything up.
#   make demo   installs what is missing, builds, runs the embedded default job
#   make test   installs what is missing, builds, runs the whole test suite
.PHONY: setup build demo test fuzz bench clean

export CCACHE_SLOPPINESS := pch_defines,time_macros,include_file_mtime,include_file_ctime

setup:
	@bash scripts/setup.sh

build: setup
	@bash scripts/build.sh all

demo: build
	./build/saelab train

test: build
	@bash scripts/test-setup.sh
	cd build && ctest --output-on-failure -j 2

fuzz: setup
	@bash scripts/fuzz.sh $(or $(SECONDS),60)

bench: build
	@bash bench/compare.sh

clean:
	rm -rf build build-fuzz

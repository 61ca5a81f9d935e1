# zsh and fish: tests/shell.rs checks the syntax of `vault completions zsh|fish` with
# `zsh -n` and `fish --no-execute` (bash is always there).
apt_install zsh fish

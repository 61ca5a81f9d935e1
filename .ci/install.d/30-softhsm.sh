# SoftHSM2: the PKCS#11 token of tests/home_cli.rs (root key in an HSM, keys tied to it).
# The tests keep the token state in a temporary directory named by SOFTHSM2_CONF.
apt_install softhsm2

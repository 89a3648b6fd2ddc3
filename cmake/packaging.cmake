# Install layout and the Debian package (CPack, DEB generator).
# Included from the top-level CMakeLists.txt after add_subdirectory(app):
#   include(cmake/packaging.cmake)
# Build the package in a build tree:  cmake --build . && cpack -G DEB
# (needs dpkg-dev for dpkg-shlibdeps and `file`; tests/deploy/deb_install_test.sh installs the
# result into a clean Debian 12 root.)
#
# Layout (paths inside the package):
#   /usr/bin/crawlgate                      the binary (install() in app/CMakeLists.txt)
#   /etc/crawlgate/crawlgate.yaml           production config (conffile), from deploy/config/
#   /etc/crawlgate/conf.d/                  local rules, included before the default rules
#   /usr/share/crawlgate/rules/*.yaml       the default rule set (rules/default, generated)
#   /usr/share/crawlgate/models/            the behavioural model (classifier/models)
#   /usr/share/crawlgate/{prometheus,grafana}/  scrape config, alert rules, dashboard
#   /lib/systemd/system/crawlgate.service   hardened unit (DynamicUser)
#   /etc/logrotate.d/crawlgate              rotation of /var/log/crawlgate/*.log (conffile)
#   /usr/share/doc/crawlgate/               README, config/metrics/deploy docs, rule licences
#
# /etc and /lib paths are absolute install destinations on purpose: they are where Debian wants
# them whatever the prefix. The package prefix is /usr.

set(CRAWLGATE_DEPLOY_DIR ${PROJECT_SOURCE_DIR}/deploy)
set(CRAWLGATE_RULES_DIR ${PROJECT_SOURCE_DIR}/rules/default)

install(FILES ${CRAWLGATE_DEPLOY_DIR}/config/crawlgate.yaml DESTINATION /etc/crawlgate)
install(DIRECTORY DESTINATION /etc/crawlgate/conf.d)
install(FILES ${CRAWLGATE_DEPLOY_DIR}/systemd/crawlgate.service DESTINATION /lib/systemd/system)
install(FILES ${CRAWLGATE_DEPLOY_DIR}/logrotate/crawlgate DESTINATION /etc/logrotate.d)

# Only the generated rule files: crawlgate.yaml in that folder is the embedded default config,
# whose relative includes would not fit /usr/share.
install(FILES
  ${CRAWLGATE_RULES_DIR}/classes.yaml
  ${CRAWLGATE_RULES_DIR}/ai-crawlers.yaml
  ${CRAWLGATE_RULES_DIR}/known-bots.yaml
  DESTINATION share/crawlgate/rules)
install(FILES
  ${CRAWLGATE_DEPLOY_DIR}/prometheus/prometheus.yml
  ${CRAWLGATE_DEPLOY_DIR}/prometheus/alerts.yml
  DESTINATION share/crawlgate/prometheus)
install(FILES ${CRAWLGATE_DEPLOY_DIR}/grafana/crawlgate.json DESTINATION share/crawlgate/grafana)
# The behavioural model (docs/model.md); enabled by a `behaviour:` block in the config.
install(FILES ${PROJECT_SOURCE_DIR}/classifier/models/crawlgate-model.json
  DESTINATION share/crawlgate/models)

install(FILES
  ${CRAWLGATE_RULES_DIR}/licenses/ai-robots-txt.LICENSE
  ${CRAWLGATE_RULES_DIR}/licenses/crawler-user-agents.LICENSE
  ${CRAWLGATE_DEPLOY_DIR}/debian/copyright
  ${PROJECT_SOURCE_DIR}/LICENSE
  ${PROJECT_SOURCE_DIR}/README.md
  ${PROJECT_SOURCE_DIR}/docs/config.md
  ${PROJECT_SOURCE_DIR}/docs/metrics.md
  DESTINATION share/doc/crawlgate)
install(FILES ${CRAWLGATE_DEPLOY_DIR}/README.md DESTINATION share/doc/crawlgate RENAME deploy.md)
install(FILES ${CRAWLGATE_RULES_DIR}/README.md DESTINATION share/doc/crawlgate RENAME rules.md)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME crawlgate)
set(CPACK_PACKAGE_VENDOR "crawlgate")
set(CPACK_PACKAGE_CONTACT "crawlgate maintainers <crawlgate@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "reverse proxy that recognises AI crawlers and denies or throttles them")
set(CPACK_PACKAGE_DESCRIPTION
    "crawlgate sits in front of a wiki, an archive or any knowledge site. Humans are proxied
untouched; declared AI crawlers are recognised by signature, and each class of client is
allowed, denied, throttled or tarpitted as configured in YAML. Ships a hardened systemd unit,
a logrotate snippet, Prometheus alert rules and a Grafana dashboard.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "logrotate")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus, nginx | haproxy")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CRAWLGATE_DEPLOY_DIR}/debian/conffiles
  ${CRAWLGATE_DEPLOY_DIR}/debian/postinst
  ${CRAWLGATE_DEPLOY_DIR}/debian/prerm
  ${CRAWLGATE_DEPLOY_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Tests and benchmarks install nothing; keep build-tree junk out of source packages anyway.
set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/;/\\\\.git/")

include(CPack)

#include "crawlgate/app/commands.h"

int main(int argc, char** argv) { return crawlgate::app::main(argc, argv); }

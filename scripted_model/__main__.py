from scripted_model.cli import main

main()
